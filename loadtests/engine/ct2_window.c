/* ct2_window.c: one Whisper window through our CTranslate2 shim on one
 * thread, CPU time of encode / decode / align (loadtests/RESULTS.md,
 * 2026-12-03 CTranslate2 with MKL). Features come from faster-whisper's own
 * extractor (80 x 3000 f32, row-major) written by:
 *   loadtests/engine/.venv/bin/python -c "import wave, numpy as np; \
 *     from faster_whisper.feature_extractor import FeatureExtractor as F; \
 *     w = wave.open('loadtests/results/2026-12-03-engine-ct2-b/meeting.wav'); \
 *     a = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768; \
 *     F(feature_size=80)(a[:480000], padding=0)[:, :3000].astype(np.float32).tofile('/tmp/win.f32')"
 * Build and run (after scripts/fetch-ct2.sh):
 *   P=native/ct2-prebuilt; g++ -O2 -std=c++17 -c native/ct2_shim.cpp -I$P/include -Inative -o /tmp/shim.o
 *   gcc -O2 loadtests/engine/ct2_window.c /tmp/shim.o -Inative -L$P/lib -lctranslate2 \
 *       -Wl,-rpath,$PWD/$P/lib -lstdc++ -o /tmp/ct2_window
 *   /tmp/ct2_window models/ct2-tiny.en /tmp/win.f32 FRAMES COMPUTE_TYPE [BATCH]
 */
#include "ct2_shim.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_PROCESS_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  char err[512]; size_t frames=atoi(argv[3]); int batch=argc>5?atoi(argv[5]):1;
  ct2s_set_num_threads(1);
  ct2s_model*m=ct2s_model_load(argv[1],argv[4],err,sizeof err); if(!m){printf("load: %s\n",err);return 1;}
  ct2s_replica*r=ct2s_replica_new(m,err,sizeof err); if(!r){printf("rep: %s\n",err);return 1;}
  size_t n=80*frames*batch; float*f=malloc(n*4); FILE*fp=fopen(argv[2],"rb");
  float*one=malloc(80*3000*4); fread(one,4,80*3000,fp);
  for(int b=0;b<batch;b++) for(int i=0;i<80;i++) for(size_t j=0;j<frames;j++) f[b*80*frames+i*frames+j]=one[i*3000+j];
  for(int rep=0;rep<2;rep++){
  double t0=now(); ct2s_encoded*e=ct2s_encode(r,f,batch,80,frames,err,sizeof err); if(!e){printf("enc: %s\n",err);return 1;}
  double t1=now(); size_t prompt[1]={50257}; ct2s_options o={1,448,1.0f,1};
  ct2s_results*res=ct2s_generate(r,e,prompt,1,&o,err,sizeof err); if(!res){printf("gen: %s\n",err);return 1;}
  double t2=now(); const size_t*ids; size_t k=ct2s_results_ids(res,0,&ids);
  size_t lens[64]; size_t*toks=malloc(448*8*batch); size_t nf[64]; size_t tot=0;
  for(int b=0;b<batch;b++){const size_t*ii;size_t kk=ct2s_results_ids(res,b,&ii);lens[b]=0;for(size_t i=0;i<kk;i++) if(ii[i]<50256){toks[tot++]=ii[i];lens[b]++;} nf[b]=frames;}
  ct2s_alignment*a=ct2s_align(r,e,prompt,1,toks,lens,nf,batch,7,err,sizeof err); if(!a){printf("align: %s\n",err);return 1;}
  double t3=now();
  const long*p; size_t np=ct2s_alignment_path(a,0,&p);
  printf("frames %zu batch %d: encode %.3f decode %.3f (%zu tokens) align %.3f (path %zu) score %.3f nospeech %.3f\n",frames,batch,t1-t0,t2-t1,k,t3-t2,np,ct2s_results_score(res,0),ct2s_results_no_speech(res,0));
  if(rep==1){for(size_t i=0;i<k;i++)printf("%zu ",ids[i]);printf("\n");}
  ct2s_alignment_free(a);ct2s_results_free(res);ct2s_encoded_free(e);}
  ct2s_replica_free(r);ct2s_model_free(m);return 0;}
